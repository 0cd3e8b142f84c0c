"""In-sandbox code contexts: driver.py (Jupyter kernels and runners behind a pipe; its modules are
listed in its docstring), startup.py (run in each python kernel) and javascript.js (the node
runner). sandlot itself imports none of them."""
