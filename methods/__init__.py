"""Built-in method plugins, registered through entry points exactly as a third party's would be."""
