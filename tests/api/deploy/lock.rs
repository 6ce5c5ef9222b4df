//! The deploy lock: races, a dead holder, Ctrl-C.
