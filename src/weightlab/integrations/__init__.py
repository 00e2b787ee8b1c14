"""Drop-ins for training frameworks (optional extras; each module imports its framework).

Importing this package imports no framework: ``weightlab.integrations.hf``
needs ``pip install 'weightlab[hf]'`` and is imported on its own.
"""
