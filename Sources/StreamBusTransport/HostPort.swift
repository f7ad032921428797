/// A "host:port" address as written in flags and config files; IPv6 hosts in brackets.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
  public let host: String
  public let port: Int

  /// An address from parts already known to be valid (a bound socket, a parsed string).
  public init(host: String, port: Int) {
    precondition((0...65535).contains(port), "port \(port) out of range")
    self.host = host
    self.port = port
  }

  /// Parses "host:port", "1.2.3.4:9092" or "[::1]:9092"; port 0 is allowed (OS picks).
  public init(parsing text: String) throws {
    func invalid(_ reason: String) -> TransportError {
      TransportError(.invalidAddress, "invalid address \"\(text)\": \(reason)")
    }
    let trimmed = text.trimmingWhitespace()
    let hostPart: Substring
    let portPart: Substring
    if trimmed.hasPrefix("[") {
      guard let closing = trimmed.firstIndex(of: "]") else {
        throw invalid("missing \"]\" after IPv6 host")
      }
      hostPart = trimmed[trimmed.index(after: trimmed.startIndex)..<closing]
      let rest = trimmed[trimmed.index(after: closing)...]
      guard rest.first == ":" else {
        throw invalid("expected \":port\" after \"]\"")
      }
      portPart = rest.dropFirst()
      guard hostPart.contains(":") else {
        throw invalid("brackets are only for IPv6 hosts")
      }
    } else {
      guard let colon = trimmed.lastIndex(of: ":") else {
        throw invalid("expected host:port")
      }
      hostPart = trimmed[..<colon]
      portPart = trimmed[trimmed.index(after: colon)...]
      guard !hostPart.contains(":") else {
        throw invalid("IPv6 hosts must be in brackets, as in [::1]:9092")
      }
    }
    guard !hostPart.isEmpty else {
      throw invalid("empty host")
    }
    guard hostPart.allSatisfy({ !$0.isWhitespace && $0 != "/" && $0 != "[" && $0 != "]" }) else {
      throw invalid("host contains a character not allowed in a host name or IP address")
    }
    guard !portPart.isEmpty else {
      throw invalid("empty port")
    }
    guard portPart.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(portPart) else {
      throw invalid("port \"\(portPart)\" is not a number")
    }
    guard (0...65535).contains(port) else {
      throw invalid("port \(port) is outside 0...65535")
    }
    self.init(host: String(hostPart), port: port)
  }

  public var description: String {
    host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
  }
}

extension StringProtocol {
  func trimmingWhitespace() -> Substring {
    let text = self[...]
    guard let first = text.firstIndex(where: { !$0.isWhitespace }),
      let last = text.lastIndex(where: { !$0.isWhitespace })
    else {
      return Substring()
    }
    return Substring(text[first...last])
  }
}
