// Module StreamBusRaftSQLite: see docs/ARCHITECTURE.md.
