from dlnsim.cli import main

raise SystemExit(main())
