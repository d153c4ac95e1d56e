// Produces tests/traces/node.txt (CommonJS): node node_src.js 2> node.txt
'use strict';

class Client {
  fetch(url) {
    return this.handler(url);
  }
}

function start(urls) {
  const client = new Client();
  urls.forEach(function (url) {
    client.fetch(url);
  });
}

start(['/health']);
