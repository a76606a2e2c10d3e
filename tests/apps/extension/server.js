const approuter = require('@sap/approuter');

const ar = approuter();
ar.beforeRequestHandler.use('/my-ext', function myMiddleware(req, res, next) {
  res.setHeader('x-custom', 'yes');
  next();
});
ar.start({
  extensions: [require('./ext/audit.js')]
});
