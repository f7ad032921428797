// Module StreamBusStorage: see docs/ARCHITECTURE.md.
