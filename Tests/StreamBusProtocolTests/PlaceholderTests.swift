import Testing
@testable import StreamBusProtocol
