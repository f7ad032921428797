#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Reads lines from a file descriptor as raw bytes, so input that is not UTF-8 reaches the
/// broker unchanged. Lines end at "\n" (a "\r" before it is dropped too); a last line without
/// a newline still counts.
final class ByteLineReader {
  private let descriptor: Int32
  private var buffer: [UInt8] = []
  private var start = 0
  private var isAtEnd = false
  static let readBytes = 256 * 1024

  init(descriptor: Int32) {
    self.descriptor = descriptor
  }

  func nextLine() -> [UInt8]? {
    while true {
      if let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
        var end = newline
        if end > start && buffer[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        let line = Array(buffer[start..<end])
        start = newline + 1
        return line
      }
      if isAtEnd {
        guard start < buffer.count else { return nil }
        let line = Array(buffer[start...])
        start = buffer.count
        return line
      }
      buffer.removeFirst(start)
      start = 0
      let oldCount = buffer.count
      buffer.append(contentsOf: repeatElement(0, count: Self.readBytes))
      let count = buffer.withUnsafeMutableBytes { raw -> Int in
        guard let base = raw.baseAddress else { return 0 }
        while true {
          let result = read(descriptor, base + oldCount, Self.readBytes)
          if result < 0 && errno == EINTR { continue }
          return result
        }
      }
      buffer.removeLast(Self.readBytes - max(count, 0))
      if count <= 0 { isAtEnd = true }
    }
  }
}
