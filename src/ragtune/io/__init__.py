"""Reading what users give ragtune and writing what it makes: data sets, prepared directories, atomic outputs."""
