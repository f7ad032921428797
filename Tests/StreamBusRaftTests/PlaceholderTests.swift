import Testing
@testable import StreamBusRaft
