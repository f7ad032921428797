import Foundation
import Testing

@testable import StreamBusRecords

/// Batches encoded by kafka-python (an independent implementation); see
/// ../shared/testdata/README.md.
@Suite struct KafkaCorpusTests {
  struct Case: Sendable, CustomTestStringConvertible {
    var file: String
    var fields: [String: any Sendable]
    var records: [[String: any Sendable]]
    var testDescription: String { file }
  }

  static let directory = sharedTestDataURL().appendingPathComponent("kafka-record-batches")

  static func cases() -> [Case] {
    guard let data = try? Data(contentsOf: directory.appendingPathComponent("manifest.json")),
      let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let cases = json["cases"] as? [[String: Any]]
    else { return [] }
    return cases.map { entry in
      Case(
        file: entry["file"] as? String ?? "?",
        fields: entry.compactMapValues { value -> (any Sendable)? in
          switch value {
          case let number as NSNumber: number.int64Value
          case let string as String: string
          default: nil
          }
        },
        records: (entry["records"] as? [[String: Any]] ?? []).map { record in
          record.mapValues { value -> any Sendable in
            switch value {
            case let string as String: string
            case let number as NSNumber: number.int64Value
            case let pairs as [[Any]]:
              pairs.map { pair in pair.map { ($0 as? String) ?? "" } }
            default: "null"
            }
          }
        })
    }
  }

  func bytes(of testCase: Case) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: Self.directory.appendingPathComponent(testCase.file)))
  }

  func base64(_ value: (any Sendable)?) -> [UInt8]? {
    guard let string = value as? String, string != "null" else { return nil }
    return Data(base64Encoded: string).map { [UInt8]($0) }
  }

  @Test func manifestListsEveryFile() throws {
    let files = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path)
      .filter { $0.hasSuffix(".bin") }
    let listed = Set(Self.cases().map(\.file))
    #expect(listed.count >= 8)
    #expect(Set(files) == listed)
  }

  @Test(arguments: cases())
  func headerMatchesManifest(_ testCase: Case) throws {
    let bytes = try bytes(of: testCase)
    let field = { (name: String) in testCase.fields[name] as? Int64 }
    #expect(Int64(bytes.count) == field("bytes"))
    let header = try RecordBatch.validate(bytes)
    #expect(header.baseOffset == field("base_offset"))
    #expect(Int64(header.partitionLeaderEpoch) == field("partition_leader_epoch"))
    #expect(Int64(header.magic) == field("magic"))
    #expect(Int64(header.crc) == field("crc"))
    #expect(Int64(header.attributes) == field("attributes"))
    #expect(Int64(header.lastOffsetDelta) == field("last_offset_delta"))
    #expect(header.baseTimestamp == field("first_timestamp"))
    #expect(header.maxTimestamp == field("max_timestamp"))
    #expect(header.producerId == field("producer_id"))
    #expect(Int64(header.producerEpoch) == field("producer_epoch"))
    #expect(Int64(header.baseSequence) == field("base_sequence"))
    #expect(Int64(header.recordCount) == field("records_count"))
    #expect(header.compression?.description == testCase.fields["compression"] as? String)
    #expect(header.isTransactional == ((testCase.fields["is_transactional"] as? Int64) == 1))
    #expect(header.totalByteCount == bytes.count)
  }

  @Test(arguments: cases().filter { ($0.fields["compression"] as? String) == "none" })
  func uncompressedDecodeToManifestAndReencodeIdentically(_ testCase: Case) throws {
    let bytes = try bytes(of: testCase)
    let batch = try RecordBatch.decode(bytes)
    #expect(batch.records.count == testCase.records.count)
    for (record, expected) in zip(batch.records, testCase.records) {
      #expect(record.offset == expected["offset"] as? Int64)
      #expect(record.timestamp == expected["timestamp"] as? Int64)
      #expect(record.key == base64(expected["key"]))
      #expect(record.value == base64(expected["value"]))
      let expectedHeaders = (expected["headers"] as? [[String]]) ?? []
      #expect(record.headers.count == expectedHeaders.count)
      for (header, pair) in zip(record.headers, expectedHeaders) {
        #expect(header.key == pair[0])
        #expect(header.value == base64(pair[1]))
      }
    }
    #expect(batch.encoded() == bytes)
  }

  @Test func gzipBatchIsRejectedWithClearError() throws {
    let testCase = try #require(Self.cases().first { $0.file == "gzip-compressed.bin" })
    let bytes = try bytes(of: testCase)
    // The CRC still checks: storage may keep compressed batches as opaque bytes.
    #expect(try RecordBatch.validate(bytes).compression == .gzip)
    let error = #expect(throws: RecordsError.self) { try RecordBatch.decode(bytes) }
    #expect(error?.code == .unsupportedCompression)
    #expect(error?.message.contains("unsupported compression (gzip)") == true)
  }

  @Test func concatenatedCorpusScansBatchByBatch() throws {
    var all: [UInt8] = []
    var expected: [Int] = []
    for testCase in Self.cases() {
      let bytes = try bytes(of: testCase)
      all += bytes
      expected.append(bytes.count)
    }
    var sizes: [Int] = []
    try all.withUnsafeBytes { buffer in
      var scanner = RecordBatchScanner(buffer)
      while let span = try scanner.next() { sizes.append(span.range.count) }
      #expect(scanner.partialTailByteCount == 0)
      #expect(scanner.position == all.count)
    }
    #expect(sizes == expected)
  }
}
