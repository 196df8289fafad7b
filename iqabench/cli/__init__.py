"""The command line (click): the root group in main.py, one small module per subcommand, each
imported only when it runs (lazy.py); the global options and their set-up in settings.py."""
