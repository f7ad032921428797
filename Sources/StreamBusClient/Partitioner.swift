/// Kafka's default key partitioner, bit for bit: records with the same key land on the same
/// partition number as they would with Kafka's Java client.
public enum Murmur2Partitioner {
  /// Kafka's 32-bit murmur2 variant (seed 0x9747b28c), as a signed Int32 like Java's.
  public static func murmur2(_ data: [UInt8]) -> Int32 {
    let multiplier: UInt32 = 0x5bd1_e995
    let shift: UInt32 = 24
    let length = data.count
    var hash: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: length)
    let wordCount = length / 4
    for word in 0..<wordCount {
      let index = word * 4
      var k =
        UInt32(data[index]) | UInt32(data[index + 1]) << 8 | UInt32(data[index + 2]) << 16
        | UInt32(data[index + 3]) << 24
      k &*= multiplier
      k ^= k >> shift
      k &*= multiplier
      hash &*= multiplier
      hash ^= k
    }
    let tail = length & ~3
    // The fall-through of Java's switch: 3 includes 2 includes 1.
    switch length % 4 {
    case 3:
      hash ^= UInt32(data[tail + 2]) << 16
      hash ^= UInt32(data[tail + 1]) << 8
      hash ^= UInt32(data[tail])
      hash &*= multiplier
    case 2:
      hash ^= UInt32(data[tail + 1]) << 8
      hash ^= UInt32(data[tail])
      hash &*= multiplier
    case 1:
      hash ^= UInt32(data[tail])
      hash &*= multiplier
    default:
      break
    }
    hash ^= hash >> 13
    hash &*= multiplier
    hash ^= hash >> 15
    return Int32(bitPattern: hash)
  }

  /// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which fails for Int32.min).
  public static func toPositive(_ value: Int32) -> Int32 {
    value & 0x7fff_ffff
  }

  /// `toPositive(murmur2(key)) % partitionCount`.
  public static func partition(forKey key: [UInt8], partitionCount: Int32) -> Int32 {
    precondition(partitionCount > 0, "a topic has at least one partition")
    return toPositive(murmur2(key)) % partitionCount
  }
}
