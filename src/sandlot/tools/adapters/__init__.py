"""Toolsets as other frameworks' tools (each needs its optional extra):

    openai_agents.py   OpenAI Agents SDK FunctionTools      pip install 'sandlot[openai-agents]'
    langchain.py       LangChain StructuredTools            pip install 'sandlot[langchain]'

The text of a result is what the framework's model sees; a failed call reads "Error: ...".
"""
