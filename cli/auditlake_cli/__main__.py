from auditlake_cli.main import main

raise SystemExit(main())
