/// ApiVersions (api key 18): which APIs and versions the server accepts.
public struct ApiVersionsRequest: WireBody {
  public static let apiKey = ApiKey.apiVersions

  public init() {}

  public init(from reader: inout WireReader, version: Int16) throws {}

  public func encode(into writer: inout WireWriter, version: Int16) {}
}

public struct ApiVersionsResponse: WireBody {
  public static let apiKey = ApiKey.apiVersions

  public var apiKeys: [ApiVersionRange]

  public struct ApiVersionRange: Sendable, Equatable {
    public var apiKey: ApiKey
    public var minVersion: Int16
    public var maxVersion: Int16

    public init(apiKey: ApiKey, minVersion: Int16, maxVersion: Int16) {
      self.apiKey = apiKey
      self.minVersion = minVersion
      self.maxVersion = maxVersion
    }
  }

  /// Version of the body sent with an UNSUPPORTED_VERSION answer to ApiVersions, so a
  /// client newer than the server still learns what the server supports.
  public static let fallbackVersion: Int16 = 0

  public init(apiKeys: [ApiVersionRange]) {
    self.apiKeys = apiKeys
  }

  /// What this build supports (``ApiKey/supported``), sorted by api key.
  public static var supportedByThisBuild: ApiVersionsResponse {
    ApiVersionsResponse(
      apiKeys: ApiKey.supported.sorted { $0.key.rawValue < $1.key.rawValue }.map {
        ApiVersionRange(
          apiKey: $0.key, minVersion: $0.value.lowerBound, maxVersion: $0.value.upperBound)
      })
  }

  public init(from reader: inout WireReader, version: Int16) throws {
    apiKeys = try reader.readArray("apiVersionsResponse.apiKeys", elementBytesMin: 6) { reader in
      return ApiVersionRange(
        apiKey: ApiKey(rawValue: try reader.readInt16("apiVersionsResponse.apiKeys.apiKey")),
        minVersion: try reader.readInt16("apiVersionsResponse.apiKeys.minVersion"),
        maxVersion: try reader.readInt16("apiVersionsResponse.apiKeys.maxVersion"))
    }
  }

  public func encode(into writer: inout WireWriter, version: Int16) {
    writer.writeArray(apiKeys) { writer, range in
      writer.writeInt16(range.apiKey.rawValue)
      writer.writeInt16(range.minVersion)
      writer.writeInt16(range.maxVersion)
    }
  }
}
