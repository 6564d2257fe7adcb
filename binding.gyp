{
  # nvmq native addon. One target, one .node file; new native features
  # (e.g. io_uring) add their plain-C++ sources to 'sources' and register
  # their exports from native/binding.cc.
  'targets': [
    {
      'target_name': 'nvmq_native',
      'sources': [
        'native/binding.cc',
        'native/fallocate.cc',
      ],
      # node-addon-api's 'node_addon_api' target: adds its include dir,
      # defines NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS and -fno-exceptions.
      'dependencies': [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api",
      ],
      'defines': [
        'NAPI_VERSION=8',
        '_FILE_OFFSET_BITS=64',
      ],
      # 'cflags' applies to C and C++ alike.
      'cflags': [ '-Wall', '-Wextra', '-fvisibility=hidden' ],
      'xcode_settings': {
        'GCC_SYMBOLS_PRIVATE_EXTERN': 'YES',
        'OTHER_CFLAGS': [ '-Wall', '-Wextra' ],
      },
    },
  ],
}
