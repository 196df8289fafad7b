"""The command line: one small module per subcommand, imported only when it runs."""
