// The lint rules (`npm run lint`; `npm run lint -- --fix` fixes the layout;
// `npm run lint -- sdk test` checks only those paths). Four kinds of rule:
//   - typescript-eslint's type-checked recommended set: floating promises,
//     unsafe `any`, misused promises and the like, found with the compiler's
//     types (each file is checked with its nearest tsconfig.json);
//   - the code's layout, in "standard" style (2 spaces, no semicolons, single
//     quotes, a space before a function's parentheses), by @stylistic;
//   - the layout of the folders: no import cycles, and imports run one way
//     (cli -> server -> broker, bridge -> shared -> the SDK's protocol; the
//     web app in web/src imports only the SDK);
//   - size: no file over 400 lines, no function over 80, unless a targeted
//     disable at that spot says why it must be so.
import js from '@eslint/js'
import stylistic from '@stylistic/eslint-plugin'
import importX from 'eslint-plugin-import-x'
import { createNodeResolver } from 'eslint-plugin-import-x/node-resolver'
import globals from 'globals'
import tseslint from 'typescript-eslint'

// The sources import './x.js' for the file x.ts (NodeNext): the resolver must
// know that, or the cycle and layer rules would see no imports at all.
const resolver = createNodeResolver({
  extensions: ['.ts', '.js', '.mjs', '.json', '.node'],
  extensionAlias: { '.js': ['.ts', '.js'], '.mjs': ['.mts', '.mjs'] },
  conditionNames: ['types', 'import', 'node', 'default']
})

// "standard" style, rule by rule, as the code is already written. Left out:
// object-property-newline, since the code groups related properties of a
// long object literal a few to a line on purpose.
const style = {
  '@stylistic/array-bracket-spacing': ['error', 'never'],
  '@stylistic/arrow-spacing': ['error', { before: true, after: true }],
  '@stylistic/block-spacing': ['error', 'always'],
  '@stylistic/brace-style': ['error', '1tbs', { allowSingleLine: true }],
  '@stylistic/comma-dangle': ['error', 'never'],
  '@stylistic/comma-spacing': ['error', { before: false, after: true }],
  '@stylistic/comma-style': ['error', 'last'],
  '@stylistic/computed-property-spacing': ['error', 'never', { enforceForClassMembers: true }],
  '@stylistic/dot-location': ['error', 'property'],
  '@stylistic/eol-last': 'error',
  '@stylistic/function-call-spacing': ['error', 'never'],
  '@stylistic/generator-star-spacing': ['error', { before: true, after: true }],
  '@stylistic/indent': ['error', 2, {
    SwitchCase: 1,
    VariableDeclarator: 1,
    outerIIFEBody: 1,
    MemberExpression: 1,
    FunctionDeclaration: { parameters: 1, body: 1 },
    FunctionExpression: { parameters: 1, body: 1 },
    CallExpression: { arguments: 1 },
    ArrayExpression: 1,
    ObjectExpression: 1,
    ImportDeclaration: 1,
    flatTernaryExpressions: false,
    ignoreComments: false,
    offsetTernaryExpressions: true
  }],
  '@stylistic/key-spacing': ['error', { beforeColon: false, afterColon: true }],
  '@stylistic/keyword-spacing': ['error', { before: true, after: true }],
  '@stylistic/lines-between-class-members': ['error', 'always', { exceptAfterSingleLine: true }],
  '@stylistic/member-delimiter-style': ['error', {
    multiline: { delimiter: 'none' },
    singleline: { delimiter: 'comma', requireLast: false }
  }],
  '@stylistic/new-parens': 'error',
  '@stylistic/no-extra-parens': ['error', 'functions'],
  '@stylistic/no-floating-decimal': 'error',
  '@stylistic/no-mixed-spaces-and-tabs': 'error',
  '@stylistic/no-multi-spaces': 'error',
  '@stylistic/no-multiple-empty-lines': ['error', { max: 1, maxBOF: 0, maxEOF: 0 }],
  '@stylistic/no-tabs': 'error',
  '@stylistic/no-trailing-spaces': 'error',
  '@stylistic/no-whitespace-before-property': 'error',
  '@stylistic/object-curly-newline': ['error', { multiline: true, consistent: true }],
  '@stylistic/object-curly-spacing': ['error', 'always'],
  '@stylistic/operator-linebreak': ['error', 'after', { overrides: { '?': 'before', ':': 'before', '|>': 'before', '|': 'before', '&': 'before' } }],
  '@stylistic/padded-blocks': ['error', { blocks: 'never', switches: 'never', classes: 'never' }],
  '@stylistic/quote-props': ['error', 'as-needed'],
  '@stylistic/quotes': ['error', 'single', { avoidEscape: true, allowTemplateLiterals: 'never' }],
  '@stylistic/rest-spread-spacing': ['error', 'never'],
  '@stylistic/semi': ['error', 'never'],
  '@stylistic/semi-spacing': ['error', { before: false, after: true }],
  '@stylistic/space-before-blocks': ['error', 'always'],
  '@stylistic/space-before-function-paren': ['error', 'always'],
  '@stylistic/space-in-parens': ['error', 'never'],
  '@stylistic/space-infix-ops': 'error',
  '@stylistic/space-unary-ops': ['error', { words: true, nonwords: false }],
  '@stylistic/spaced-comment': ['error', 'always', {
    line: { markers: ['*package', '!', '/', ',', '='] },
    block: { balanced: true, markers: ['*package', '!', ',', ':', '::', 'flow-include'], exceptions: ['*'] }
  }],
  '@stylistic/template-curly-spacing': ['error', 'never'],
  '@stylistic/template-tag-spacing': ['error', 'never'],
  '@stylistic/type-annotation-spacing': 'error',
  '@stylistic/wrap-iife': ['error', 'any', { functionPrototypeMethods: true }],
  '@stylistic/yield-star-spacing': ['error', 'both']
}

// Who may import whom. A zone forbids files under `target` to import files
// under `from` (paths from the repository's root).
const layers = [
  { target: './bridge', from: ['./broker', './server'], message: 'the message service runs without the broker: pass what it needs in from server/' },
  { target: './broker', from: ['./bridge', './server'], message: 'the broker knows nothing of the message service: server/ wires the two' },
  { target: './shared', from: ['./broker', './bridge', './server', './cli', './bench'], message: 'shared/ is the bottom layer' },
  { target: './sdk/src', from: '.', except: ['./sdk/src', './node_modules/mqtt'], message: 'the SDK is its own package: it imports only its own files and its dependencies' },
  { target: './web/src', from: '.', except: ['./web/src', './sdk', './node_modules/@warbler/sdk'], message: 'the web app runs in the browser: it imports only its own files and the SDK' }
]

export default tseslint.config(
  { ignores: ['**/dist/**', 'data/**', 'prof/**', 'examples/web/bundle/**'] },
  js.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { ...globals.node }
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { '@stylistic': stylistic, 'import-x': importX },
    settings: {
      'import-x/resolver-next': [resolver],
      // The cycle check reads the imported files: it must parse TypeScript.
      'import-x/extensions': ['.ts', '.js', '.mjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] }
    },
    rules: {
      ...style,
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-restricted-paths': ['error', { zones: layers }],
      'max-lines': ['error', { max: 400, skipBlankLines: true, skipComments: true }],
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true, IIFEs: true }],
      'no-new': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }]
    }
  },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname }
    },
    rules: {
      // Type-only imports where only types are used (tsconfig's
      // verbatimModuleSyntax demands it for imports; this covers exports too).
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/consistent-type-exports': 'error',
      // `??` not `||` for defaults.
      '@typescript-eslint/prefer-nullish-coalescing': 'error',
      // node:test's test() and describe() return promises the runner itself
      // awaits; awaiting them in a test file changes nothing.
      // A name that starts with _ is there on purpose: a position in a
      // signature, or what a destructuring leaves out.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // `err !== null ? reject(err) : resolve(x)` in node-style callbacks.
      '@typescript-eslint/no-unused-expressions': ['error', { allowTernary: true }],
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }]
      }]
    }
  },
  {
    // The browser example and the web app run in a page; their build and server scripts in Node.
    files: ['examples/web/app.js', 'web/src/**/*.ts'],
    languageOptions: { globals: { ...globals.browser } }
  }
)
