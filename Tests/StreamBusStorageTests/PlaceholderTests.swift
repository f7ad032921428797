import Testing
@testable import StreamBusStorage
