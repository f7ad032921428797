import Testing

@testable import StreamBusMetadata

@Suite struct RecordCodecTests {
  @Test func emptyBatchRoundTrips() throws {
    #expect(try MetadataRecord.decodeBatch(MetadataRecord.encodeBatch([])).isEmpty)
  }
}
