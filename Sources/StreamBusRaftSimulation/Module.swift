// Module StreamBusRaftSimulation: see docs/ARCHITECTURE.md.
