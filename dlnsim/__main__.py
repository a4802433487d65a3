from dlnsim.cli.app import main

raise SystemExit(main())
