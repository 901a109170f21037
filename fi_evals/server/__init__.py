"""The reference evaluation server (``fi-evals serve``).

Needs ``pip install 'fi-evals[server]'``.
"""
