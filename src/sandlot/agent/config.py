"""The sandbox's settings (protocol/contract.py's AgentConfig), read once from agent.json at start."""

from ..protocol.contract import AgentConfig

settings = AgentConfig()  # the closed defaults, until main() loads the sandbox's agent.json
run_dir = "/run/sandlot"  # the directory of the agent's socket (main() sets it); sessions live there


def load(path):
    global settings
    settings = AgentConfig.load(path)
