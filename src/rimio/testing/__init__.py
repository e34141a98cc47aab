"""In-process cluster harness for tests and for programs that embed Rimio."""
