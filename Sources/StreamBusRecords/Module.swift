// Module StreamBusRecords: see docs/ARCHITECTURE.md.
