import Logging

/// Logging setup shared by every StreamBus executable: lines on stderr with a timestamp,
/// level, component label and the process name.
public enum ProcessLogging {
  /// Accepted spellings of `--log-level`, in increasing severity.
  public static let levelNames = Logger.Level.allCases.map(\.rawValue)

  /// Parses a `--log-level` value ("info", "WARNING", "warn").
  public static func parseLevel(_ text: String) throws -> Logger.Level {
    let lowered = text.trimmingWhitespace().lowercased()
    if lowered == "warn" {
      return .warning
    }
    guard let level = Logger.Level(rawValue: lowered) else {
      throw TransportError(
        .invalidConfiguration,
        "unknown log level \"\(text)\"; valid levels: \(levelNames.joined(separator: ", "))")
    }
    return level
  }

  /// The handler `bootstrap` installs, exposed so it can be checked without touching the
  /// process-wide logging system.
  public static func makeHandler(label: String, processName: String, level: Logger.Level)
    -> StreamLogHandler
  {
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = level
    handler.metadata["process"] = "\(processName)"
    return handler
  }

  /// Installs the stderr handler for the whole process; call once, first thing in `main`.
  public static func bootstrap(processName: String, level: Logger.Level) {
    LoggingSystem.bootstrap { label in
      makeHandler(label: label, processName: processName, level: level)
    }
  }
}
