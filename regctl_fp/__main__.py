from regctl_fp.cli import run

run()
