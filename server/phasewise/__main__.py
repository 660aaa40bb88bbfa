from phasewise.cli import main

raise SystemExit(main())
