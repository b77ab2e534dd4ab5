// The old console's links (/console/#task=ID) arrive here through the /console/ redirect, fragment kept: open that run.
(function () {
  "use strict";
  const match = location.hash.match(/^#task=(\d+)$/);
  if (match) location.replace("/studio/runs/" + match[1] + "/");
})();
