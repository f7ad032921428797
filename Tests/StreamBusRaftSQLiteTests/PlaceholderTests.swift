import Testing
@testable import StreamBusRaftSQLite
