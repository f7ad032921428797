import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A plain blocking TCP socket for sending bytes a well-behaved client never would
/// (oversized length prefixes, garbage headers) and seeing how the server reacts.
public final class RawSocket: @unchecked Sendable {
  private var descriptor: Int32

  /// What a read found.
  public enum ReadResult: Equatable, Sendable {
    /// One complete response frame payload (without the 4-byte length).
    case frame([UInt8])
    /// The server closed the connection (or reset it).
    case closed
    /// Nothing arrived within the timeout.
    case timedOut
  }

  /// Connects to an IPv4 `host:port` (tests use 127.0.0.1).
  public init(host: String, port: Int, receiveTimeoutMs: Int = 5_000) throws {
    descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw HarnessError("socket(): errno \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
      close(descriptor)
      throw HarnessError("not an IPv4 address: \(host)")
    }
    let connected = withUnsafePointer(to: &address) { pointer in
      pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard connected == 0 else {
      let code = errno
      close(descriptor)
      throw HarnessError("connect to \(host):\(port): errno \(code)")
    }
    var timeout = timeval(
      tv_sec: receiveTimeoutMs / 1000, tv_usec: (receiveTimeoutMs % 1000) * 1000)
    setsockopt(
      descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
  }

  deinit {
    if descriptor >= 0 { close(descriptor) }
  }

  public func closeSocket() {
    if descriptor >= 0 {
      close(descriptor)
      descriptor = -1
    }
  }

  /// Writes all bytes; false when the peer already closed the connection.
  @discardableResult
  public func write(_ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
      let count = bytes.withUnsafeBytes { buffer -> Int in
        guard let base = buffer.baseAddress else { return 0 }
        return send(descriptor, base + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
      }
      if count < 0 && errno == EINTR { continue }
      if count <= 0 { return false }
      offset += count
    }
    return true
  }

  /// Reads one length-prefixed frame, or reports close/timeout.
  public func readFrame(frameBytesMax: Int = 64 << 20) -> ReadResult {
    let prefix: [UInt8]
    switch readExactly(4) {
    case .frame(let bytes): prefix = bytes
    case .closed: return .closed
    case .timedOut: return .timedOut
    }
    let length = Int(
      Int32(bigEndian: prefix.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }))
    guard length >= 0, length <= frameBytesMax else { return .closed }
    return readExactly(length)
  }

  private func readExactly(_ count: Int) -> ReadResult {
    var bytes = [UInt8](repeating: 0, count: count)
    var offset = 0
    while offset < count {
      let received = bytes.withUnsafeMutableBytes { buffer -> Int in
        guard let base = buffer.baseAddress else { return 0 }
        return recv(descriptor, base + offset, count - offset, 0)
      }
      if received == 0 { return .closed }
      if received < 0 {
        if errno == EINTR { continue }
        if errno == EAGAIN || errno == EWOULDBLOCK { return .timedOut }
        return .closed
      }
      offset += received
    }
    return .frame(bytes)
  }
}
