"""The sandbox's settings (protocol/contract.py's AgentConfig), read once from agent.json at start."""

from ..protocol.contract import AgentConfig

settings = AgentConfig()  # the closed defaults, until main() loads the sandbox's agent.json


def load(path):
    global settings
    settings = AgentConfig.load(path)
