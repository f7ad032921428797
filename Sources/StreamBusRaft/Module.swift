// Module StreamBusRaft: see docs/ARCHITECTURE.md.
