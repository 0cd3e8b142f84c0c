"""The built-in tools, by category:

    code         run_python_code, run_python_file, run_shell_command, run_ipython_cell
    files        save_file, write_file, read_file, read_multiple_files, edit_file, delete_file,
                 list_files, list_directory, directory_tree, file_exists, copy_file, move_file,
                 create_directory, search_files, get_file_info, list_allowed_directories
    packages     install_pip_package, install_pip_packages, uninstall_pip_package,
                 list_installed_packages, check_package_installed
    environment  set_environment_variable, get_environment_variable
    sandbox      get_sandbox_status, get_resource_usage, reset_sandbox
"""

from __future__ import annotations

from .._tool import Tool
from . import code, environment, files, packages, sandbox

BUILTIN: dict[str, Tool] = {t.name: t for module in (code, files, packages, environment, sandbox)
                            for t in vars(module).values() if isinstance(t, Tool)}

# Alphora's and AgentScope's tool sets, for toolsets that mirror them (`Toolset(sandbox, ALPHORA_TOOLS)`).
ALPHORA_TOOLS = [
    "run_python_code", "run_python_file", "run_shell_command", "save_file", "read_file", "delete_file", "list_files",
    "file_exists", "copy_file", "move_file", "install_pip_package", "install_pip_packages", "uninstall_pip_package",
    "list_installed_packages", "check_package_installed", "set_environment_variable", "get_environment_variable",
    "get_sandbox_status", "get_resource_usage", "reset_sandbox",
]
AGENTSCOPE_TOOLS = [
    "run_ipython_cell", "run_shell_command", "read_file", "read_multiple_files", "write_file", "edit_file",
    "create_directory", "list_directory", "directory_tree", "move_file", "search_files", "get_file_info",
    "list_allowed_directories",
]
