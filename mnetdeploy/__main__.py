from mnetdeploy.cli import main

main()
