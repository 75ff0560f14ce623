"""Where the database lives, how connections are made, and the runner that migrates it."""
