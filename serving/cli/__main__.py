from serving.cli.app import main

main()
