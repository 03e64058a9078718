from regctl_fp.cli import main

main()
