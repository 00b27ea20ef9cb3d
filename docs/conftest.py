collect_ignore = ["conf.py"]
