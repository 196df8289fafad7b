"""Tasks beside correlation scoring: multiple-choice perception questions (mcq)."""
