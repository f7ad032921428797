// Module StreamBusProtocol: see docs/ARCHITECTURE.md.
