// `desRouter(deps)`: GET /files/:uid for users' own Express apps
// (`app.use('/files', desRouter({ store }))`). The responder does the work.

import { Router } from 'express'
import { FilesResponder, type ResponderDeps } from './responder'

export function desRouter(deps: ResponderDeps | FilesResponder): Router {
  const responder = deps instanceof FilesResponder ? deps : new FilesResponder(deps)
  const router = Router()
  // req.url is relative to where the router is mounted: `/<uid>?created_at=…`.
  router.use((req, res) => void responder.handle(req, res, req.url))
  return router
}
