// Module StreamBusSQLite: see docs/ARCHITECTURE.md.
