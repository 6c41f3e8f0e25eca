// What the browser remembers about its person: a name and a colour (localStorage).

export const PALETTE = [
  '#e5484d', '#f76b15', '#2f9e44', '#12a594', '#0b84e0',
  '#3e63dd', '#8e4ec6', '#d6409f', '#a0703c', '#697077'
]

const ADJECTIVES = ['Swift', 'Quiet', 'Bright', 'Calm', 'Bold', 'Keen', 'Merry', 'Nimble', 'Brave', 'Witty']
const ANIMALS = ['Otter', 'Heron', 'Fox', 'Lynx', 'Wren', 'Badger', 'Falcon', 'Panda', 'Marten', 'Ibis']

function pick (list) {
  return list[Math.floor(Math.random() * list.length)]
}

function load (key) {
  try { return localStorage.getItem(key) } catch { return null }
}

function save (key, value) {
  try { localStorage.setItem(key, value) } catch {}
}

export function getUser () {
  let name = load('quire.name')
  if (!name) {
    name = `${pick(ADJECTIVES)} ${pick(ANIMALS)}`
    save('quire.name', name)
  }
  let color = load('quire.color')
  if (!color || !/^#[0-9a-f]{6}$/i.test(color)) {
    color = pick(PALETTE)
    save('quire.color', color)
  }
  return { name, color }
}

export function setName (name) {
  save('quire.name', name)
}

export function getWrap () {
  return load('quire.wrap') !== 'off'
}

export function setWrap (on) {
  save('quire.wrap', on ? 'on' : 'off')
}

export function initials (name) {
  const parts = String(name).trim().split(/\s+/).filter(Boolean)
  if (!parts.length) return '?'
  const first = [...parts[0]][0] ?? ''
  const second = parts.length > 1 ? [...parts[parts.length - 1]][0] ?? '' : ''
  return (first + second).toUpperCase()
}
