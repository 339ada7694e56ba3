from mixq.cli.main import main

raise SystemExit(main())
