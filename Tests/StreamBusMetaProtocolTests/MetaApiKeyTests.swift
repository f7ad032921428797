import StreamBusProtocol
import Testing

@testable import StreamBusMetaProtocol

@Suite struct MetaApiKeyTests {
  @Test func keysAreInternalUniqueAndNamed() {
    let keys = MetaApiKey.all.map(\.apiKey)
    #expect(Set(keys).count == keys.count)
    #expect(keys.allSatisfy { $0.isInternal })
    #expect(keys.map(\.rawValue) == keys.map(\.rawValue).sorted())
    #expect(MetaApiKey.name(MetaApiKey.createTopics) == "CreateTopics")
    #expect(MetaApiKey.name(ApiKey.produce) == "Produce")
    #expect(MetaApiKey.isMetaApi(MetaApiKey.quorumStatus))
    #expect(!MetaApiKey.isMetaApi(ApiKey.createTopics))
  }
}
