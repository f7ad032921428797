import Testing
@testable import StreamBusRecords
