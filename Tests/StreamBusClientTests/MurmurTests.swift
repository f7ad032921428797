import Testing

@testable import StreamBusClient

/// A second, deliberately different transcription of Kafka's `Utils.murmur2`: 64-bit
/// arithmetic masked to 32 bits, and the tail handled with explicit fall-through flags.
private func referenceMurmur2(_ data: [UInt8]) -> Int32 {
  let mask: UInt64 = 0xffff_ffff
  let m: UInt64 = 0x5bd1_e995
  var h: UInt64 = (0x9747_b28c ^ UInt64(data.count)) & mask
  var index = 0
  while index + 4 <= data.count {
    var k =
      UInt64(data[index]) + (UInt64(data[index + 1]) << 8) + (UInt64(data[index + 2]) << 16)
      + (UInt64(data[index + 3]) << 24)
    k = (k * m) & mask
    k ^= k >> 24
    k = (k * m) & mask
    h = (h * m) & mask
    h ^= k
    index += 4
  }
  let remaining = data.count - index
  if remaining >= 3 { h ^= UInt64(data[index + 2]) << 16 }
  if remaining >= 2 { h ^= UInt64(data[index + 1]) << 8 }
  if remaining >= 1 {
    h ^= UInt64(data[index])
    h = (h * m) & mask
  }
  h ^= h >> 13
  h = (h * m) & mask
  h ^= h >> 15
  return Int32(truncatingIfNeeded: Int64(h))
}

@Suite struct MurmurTests {
  /// Values of Kafka's Java `Utils.murmur2` for these keys (the cases in Kafka's own
  /// UtilsTest, recomputed here with an independent Python transcription).
  @Test(arguments: [
    ("21", Int32(-973_932_308)),
    ("foobar", -790_332_482),
    ("a-little-bit-long-string", -985_981_536),
    ("a-little-bit-longer-string", -1_486_304_829),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
    ("abc", 479_470_107),
    ("", 275_646_681),
  ])
  func knownVectors(key: String, expected: Int32) {
    #expect(Murmur2Partitioner.murmur2(Array(key.utf8)) == expected)
    #expect(referenceMurmur2(Array(key.utf8)) == expected)
  }

  @Test func matchesReferenceOnRandomKeysOfEveryTailLength() {
    var generator = SystemRandomNumberGenerator()
    for length in 0..<64 {
      for _ in 0..<20 {
        let key = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
        #expect(Murmur2Partitioner.murmur2(key) == referenceMurmur2(key))
      }
    }
  }

  @Test func toPositiveClearsTheSignBitOnly() {
    #expect(Murmur2Partitioner.toPositive(-1) == Int32.max)
    #expect(Murmur2Partitioner.toPositive(Int32.min) == 0)
    #expect(Murmur2Partitioner.toPositive(-973_932_308) == 1_173_551_340)
    #expect(Murmur2Partitioner.toPositive(42) == 42)
  }

  /// `toPositive(murmur2(key)) % n`, worked out from the vectors above.
  @Test(arguments: [
    ("21", Int32(3), Int32(0)),
    ("a-little-bit-long-string", 3, 2),
    ("a-little-bit-longer-string", 6, 5),
    ("abc", 6, 3),
    ("abc", 1, 0),
  ])
  func partitionMapping(key: String, partitions: Int32, expected: Int32) {
    #expect(
      Murmur2Partitioner.partition(forKey: Array(key.utf8), partitionCount: partitions)
        == expected)
  }
}
