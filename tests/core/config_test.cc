#include "core/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace clipscale {
namespace {

using ::testing::HasSubstr;

struct Inner {
  int depth = 1;
  std::vector<int> sizes = {1};
  double rate = 0.5;

  template <class V>
  void Visit(V& v) {
    v("depth", depth);
    v("sizes", sizes);
    v("rate", rate);
  }
};

struct Outer {
  std::string name = "default";
  bool flag = false;
  std::optional<int> maybe;
  Inner inner;

  template <class V>
  void Visit(V& v) {
    v("name", name);
    v("flag", flag);
    v("maybe", maybe);
    v("inner", inner);
  }
};

std::string WriteConfig(const std::string& text) {
  const std::string path = testing::MakeTempDir() + "/config.yaml";
  std::ofstream(path) << text;
  return path;
}

std::string ErrorOf(const absl::StatusOr<Outer>& result) {
  EXPECT_FALSE(result.ok());
  return std::string(result.status().message());
}

TEST(ConfigTest, ReadsFieldsAndKeepsDefaults) {
  const std::string path = WriteConfig("name: run\ninner:\n  depth: 3\n  sizes: [4, 5]\n");
  absl::StatusOr<Outer> config = LoadConfigFile<Outer>(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "run");
  EXPECT_FALSE(config->flag);
  EXPECT_FALSE(config->maybe.has_value());
  EXPECT_EQ(config->inner.depth, 3);
  EXPECT_EQ(config->inner.sizes, (std::vector<int>{4, 5}));
  EXPECT_EQ(config->inner.rate, 0.5);
}

TEST(ConfigTest, UnknownKeyNamesFileLineAndKeyPath) {
  const std::string path = WriteConfig("name: run\ninner:\n  depht: 3\n");
  const std::string error = ErrorOf(LoadConfigFile<Outer>(path));
  EXPECT_THAT(error, HasSubstr(path + ":3:3"));
  EXPECT_THAT(error, HasSubstr("unknown key 'inner.depht'"));
  EXPECT_THAT(error, HasSubstr("depth"));  // the keys that are known there
}

TEST(ConfigTest, WrongTypeNamesFileLineKeyAndValue) {
  const std::string path = WriteConfig("inner:\n  depth: abc\nflag: maybe\n");
  const std::string error = ErrorOf(LoadConfigFile<Outer>(path));
  // Both problems are reported at once.
  EXPECT_THAT(error, HasSubstr(path + ":2:10: inner.depth: expected an integer, got 'abc'"));
  EXPECT_THAT(error, HasSubstr(path + ":3:7: flag: expected a boolean, got 'maybe'"));
}

// yaml-cpp alone reads "010" as 8 and "0x10" as 16 (base from the prefix).
TEST(ConfigTest, IntegersAreDecimal) {
  absl::StatusOr<Outer> config =
      ParseConfigString<Outer>("inner:\n  depth: 010\n  sizes: [+7, -0012]\n", "text");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->inner.depth, 10);
  EXPECT_EQ(config->inner.sizes, (std::vector<int>{7, -12}));
  EXPECT_EQ(ParseConfigString<Outer>("", "text", {"inner.depth=08"})->inner.depth, 8);

  const std::string path = WriteConfig("inner:\n  depth: 0x10\nmaybe: 1e3\n");
  const std::string error = ErrorOf(LoadConfigFile<Outer>(path));
  EXPECT_THAT(error, HasSubstr(path + ":2:10: inner.depth: expected an integer, got '0x10' "
                                      "(decimal digits, -2147483648 to 2147483647)"));
  EXPECT_THAT(error, HasSubstr(path + ":3:8: maybe: expected an integer, got '1e3'"));
  EXPECT_THAT(ErrorOf(ParseConfigString<Outer>("inner: {depth: 0o10}\n", "text")),
              HasSubstr("inner.depth: expected an integer, got '0o10'"));
  EXPECT_THAT(ErrorOf(ParseConfigString<Outer>("inner: {depth: 2147483648}\n", "text")),
              HasSubstr("inner.depth: expected an integer, got '2147483648'"));
  EXPECT_EQ(ParseConfigString<Outer>("inner: {depth: -2147483648}\n", "text")->inner.depth,
            -2147483648LL);
}

TEST(ConfigTest, ParseDecimalKeepsToTheTypesRange) {
  using config_internal::ParseDecimal;
  int64_t i64 = 0;
  EXPECT_TRUE(ParseDecimal("9223372036854775807", &i64));
  EXPECT_EQ(i64, INT64_MAX);
  EXPECT_TRUE(ParseDecimal("-9223372036854775808", &i64));
  EXPECT_EQ(i64, INT64_MIN);
  EXPECT_FALSE(ParseDecimal("9223372036854775808", &i64));
  EXPECT_FALSE(ParseDecimal("-9223372036854775809", &i64));
  uint64_t u64 = 0;
  EXPECT_TRUE(ParseDecimal("18446744073709551615", &u64));
  EXPECT_EQ(u64, UINT64_MAX);
  EXPECT_FALSE(ParseDecimal("18446744073709551616", &u64));
  EXPECT_FALSE(ParseDecimal("-1", &u64));
  for (const char* bad : {"", "+", "-", " 1", "1 ", "0x1", "1.0", "1_000"}) {
    EXPECT_FALSE(ParseDecimal(bad, &i64)) << "'" << bad << "'";
  }
}

TEST(ConfigTest, SectionGivenAScalarIsAnError) {
  const std::string error = ErrorOf(ParseConfigString<Outer>("inner: 3\n", "text"));
  EXPECT_THAT(error, HasSubstr("inner: expected a mapping"));
}

TEST(ConfigTest, OverridesReplaceValuesAndAreNamedInErrors) {
  const std::string path = WriteConfig("name: run\ninner:\n  depth: 3\n");
  absl::StatusOr<Outer> config =
      LoadConfigFile<Outer>(path, {"inner.depth=7", "name=other", "maybe=2", "inner.sizes=[8,9]"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->inner.depth, 7);
  EXPECT_EQ(config->name, "other");
  EXPECT_EQ(config->maybe, 2);
  EXPECT_EQ(config->inner.sizes, (std::vector<int>{8, 9}));

  EXPECT_THAT(ErrorOf(LoadConfigFile<Outer>(path, {"inner.depth=zz"})),
              HasSubstr("--set inner.depth: inner.depth: expected an integer, got 'zz'"));
  EXPECT_THAT(ErrorOf(LoadConfigFile<Outer>(path, {"inner.bogus=1"})),
              HasSubstr("unknown key 'inner.bogus'"));
  EXPECT_THAT(ErrorOf(LoadConfigFile<Outer>(path, {"no_equals_sign"})),
              HasSubstr("expected key.path=value"));
  EXPECT_THAT(ErrorOf(LoadConfigFile<Outer>(path, {"name.x=1"})), HasSubstr("--set name.x=1: "));
}

TEST(ConfigTest, OverrideCreatesMissingSections) {
  absl::StatusOr<Outer> config = ParseConfigString<Outer>("", "empty", {"inner.rate=0.25"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->inner.rate, 0.25);
}

TEST(ConfigTest, ScalarStandsForAOneElementList) {
  absl::StatusOr<Outer> config = ParseConfigString<Outer>("inner: {sizes: 5}\n", "text");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->inner.sizes, (std::vector<int>{5}));
  EXPECT_THAT(ErrorOf(ParseConfigString<Outer>("inner: {sizes: {a: 1}}\n", "text")),
              HasSubstr("inner.sizes: expected a list"));
  EXPECT_THAT(ErrorOf(ParseConfigString<Outer>("inner: {sizes: [1, x]}\n", "text")),
              HasSubstr("inner.sizes[1]: expected an integer, got 'x'"));
}

TEST(ConfigTest, WrittenYamlReadsBackTheSame) {
  Outer config;
  config.name = "a: b";  // needs quoting
  config.flag = true;
  config.maybe = 4;
  config.inner.depth = 9;
  config.inner.sizes = {3, 2, 1};
  config.inner.rate = 1e-3;
  absl::StatusOr<Outer> back = ParseConfigString<Outer>(ConfigToYaml(config), "written");
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << ConfigToYaml(config);
  EXPECT_EQ(back->name, config.name);
  EXPECT_EQ(back->flag, config.flag);
  EXPECT_EQ(back->maybe, config.maybe);
  EXPECT_EQ(back->inner.depth, config.inner.depth);
  EXPECT_EQ(back->inner.sizes, config.inner.sizes);
  EXPECT_EQ(back->inner.rate, config.inner.rate);
}

TEST(ConfigTest, MissingOrMalformedFiles) {
  EXPECT_EQ(LoadConfigFile<Outer>("/no/such/config.yaml").status().code(),
            absl::StatusCode::kNotFound);
  const std::string path = WriteConfig("name: [unclosed\n");
  EXPECT_THAT(ErrorOf(LoadConfigFile<Outer>(path)), HasSubstr(path + ":"));
  EXPECT_THAT(ErrorOf(ParseConfigString<Outer>("- a\n- b\n", "list")),
              HasSubstr("expected a mapping at the top level"));
}

}  // namespace
}  // namespace clipscale
