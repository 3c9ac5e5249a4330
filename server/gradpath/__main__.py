from gradpath.cli import main

raise SystemExit(main())
