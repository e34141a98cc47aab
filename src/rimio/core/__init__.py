"""Pure logic: no I/O, no trio, no clock reads. Time is always a parameter."""
