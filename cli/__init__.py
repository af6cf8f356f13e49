"""embedkit's command-line interface (installed as ``embedkit.cli``)."""
